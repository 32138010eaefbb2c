-- Tenant roles (one per tenant, see docs/SECURITY.md) must not be able to create objects
-- anywhere: a function of their own could run statements the application never wrote.
-- PostgreSQL 15 and later already create `public` without CREATE for PUBLIC; older clusters,
-- and databases upgraded from them, still grant it. Revoking what was not granted is a no-op;
-- a login role that does not own `public` gets a warning, not an error.
revoke create on schema public from public;
