-- Custom domains are proven before they route: `domain` is the verified domain (the only one
-- that resolves); `pending_domain` awaits proof with `domain_token` served under it.
alter table control.tenants
    add column pending_domain text,
    add column domain_token text;

-- Domains claimed before proof existed were never proven: they must be proven now.
update control.tenants
   set pending_domain = domain,
       domain_token = replace(gen_random_uuid()::text, '-', ''),
       domain = null
 where domain is not null;
