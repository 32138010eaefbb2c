#!/usr/bin/env bash
# PostgreSQL's own cost of many tenant roles, as tenantry uses them: a non-superuser login role
# (LOGIN CREATEROLE) that is a member of every tenant role and switches to one per transaction.
# Measures, at each role count N, as that login role:
#   - the first SET ROLE after a membership change anywhere in the cluster (PostgreSQL rebuilds
#     the login role's membership list in every backend after any such change);
#   - CREATE ROLE and GRANT <role> TO <login> (what provisioning a tenant role costs);
# and the same CREATE ROLE and GRANT as a superuser. docs/BENCHMARKS.md, run K.
#
#   benches/role_membership.sh HOST PORT N [N ...]   grows rb_* roles to each N and measures
#   benches/role_membership.sh HOST PORT --clean     drops every rb_* role it made
#
# Roles are cluster-wide: run it on a scratch cluster (or --clean afterwards). Needs a superuser
# `postgres` reachable without a password, and psql.
set -euo pipefail
host=$1 port=$2
shift 2
su=(psql -h "$host" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1)

if [ "${1:-}" = --clean ]; then
  # A thousand a transaction: each dropped role holds a lock until its transaction ends.
  while [ "$("${su[@]}" -c "select count(*) from pg_roles where rolname like 'rb\_%' and rolname <> 'rb_login'")" != 0 ]; do
    "${su[@]}" -c "do \$\$ declare r record; begin
      for r in select rolname from pg_roles where rolname like 'rb\_%' and rolname <> 'rb_login' limit 1000 loop
        execute format('drop role %I', r.rolname); end loop; end \$\$"
  done
  "${su[@]}" -c "drop role if exists rb_login"
  exit 0
fi

"${su[@]}" -c "do \$\$ begin if not exists (select from pg_roles where rolname = 'rb_login') then
  create role rb_login login createrole; end if; end \$\$"
echo "# $("${su[@]}" -c 'show server_version')"
echo "roles | first SET ROLE after a change (login) | CREATE ROLE (login) | GRANT (login) | CREATE ROLE (superuser) | GRANT (superuser)"
have=$("${su[@]}" -c "select count(*) from pg_roles where rolname ~ '^rb_t_[0-9]+$'")
ms() { grep -o 'Time: [0-9.]* ms' | sed 's/Time: //; s/ ms//' | tr '\n' ' '; }
for n in "$@"; do
  while [ "$have" -lt "$n" ]; do
    to=$(( have + 2000 < n ? have + 2000 : n ))
    "${su[@]}" -c "do \$\$ begin for i in $((have + 1))..$to loop
      execute format('create role rb_t_%s nologin', i); execute format('grant rb_t_%s to rb_login', i);
      end loop; end \$\$"
    have=$to
  done
  # A warm session of the login role; a membership change from another session; then timed.
  login=$(psql -h "$host" -p "$port" -U rb_login -d postgres -qAt -v ON_ERROR_STOP=1 2>&1 <<SQL
set role rb_t_1;
reset role;
\\! psql -h $host -p $port -U postgres -d postgres -qAt -c 'create role rb_probe nologin' -c 'grant rb_probe to rb_login' -c 'drop role rb_probe'
\\timing on
set role rb_t_2;
\\timing off
reset role;
\\timing on
create role rb_new_$n nologin;
grant rb_new_$n to rb_login;
SQL
  )
  super=$("${su[@]}" 2>&1 <<SQL
\\timing on
create role rb_su_$n nologin;
grant rb_su_$n to rb_login;
SQL
  )
  read -r set_role create grant <<<"$(ms <<<"$login")"
  read -r su_create su_grant <<<"$(ms <<<"$super")"
  echo "$n | $set_role | $create | $grant | $su_create | $su_grant"
  "${su[@]}" -c "drop role rb_new_$n" -c "drop role rb_su_$n"
done
