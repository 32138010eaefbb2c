-- Soft delete: a deleted tenant is gone for requests at once; its schema is purged later.
alter table control.tenants add column deleted_at timestamptz;
