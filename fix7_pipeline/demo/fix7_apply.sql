-- FIX7 (sample): certify the approved births whose approvals are all in.
-- Each transitioned row is bumped (row_version, previous_status, updated_at), gets a birth certificate
-- hash, and writes one directus_activity + one directus_revisions row, as the birth surface does.
-- The rows touched are kept in fix7_backup_birth_registry so fix7_rollback.sql can restore them exactly.
-- Everything this change inserts is marked: activity origin 'fix7:apply', issue codes 'FIX7_*'.
-- No BEGIN/COMMIT: the pipeline runs this file in one transaction.

create table public.fix7_backup_birth_registry as
select r.id, r.status, r.previous_status, r.row_version, r.updated_at, r.born_at, r.birth_certificate_hash
from public.birth_registry r
where r.status = 'approved'
  and exists (select 1 from public.os_proposal_approvals a
              where a.birth_registry_id = r.id and a.decision = 'approved')
  and not exists (select 1 from public.os_proposal_approvals a
                  where a.birth_registry_id = r.id and a.decision <> 'approved');

alter table public.fix7_backup_birth_registry add primary key (id);

alter table public.birth_registry add column fix7_migrated boolean not null default false;

update public.birth_registry r
set status = 'born',
    previous_status = r.status,
    row_version = r.row_version + 1,
    born_at = greatest(now(), r.updated_at),
    updated_at = greatest(now(), r.updated_at),
    birth_certificate_hash = encode(sha256(convert_to('fix7:' || r.id::text || ':' || r.content_hash, 'UTF8')), 'hex'),
    fix7_migrated = true
from public.fix7_backup_birth_registry b
where b.id = r.id;

with act as (
  insert into public.directus_activity (action, "user", "timestamp", ip, user_agent, collection, item, origin)
  select 'update', r.user_updated, r.updated_at, null, 'fix7 migration', 'birth_registry', r.id::text, 'fix7:apply'
  from public.birth_registry r
  join public.fix7_backup_birth_registry b on b.id = r.id
  returning id, item
)
insert into public.directus_revisions (activity, collection, item, data, delta, parent)
select act.id, 'birth_registry', act.item,
       json_build_object('id', r.id, 'object_id', r.object_id, 'object_type', r.object_type, 'status', r.status,
                         'content_hash', r.content_hash, 'birth_certificate_hash', r.birth_certificate_hash,
                         'row_version', r.row_version, 'previous_status', r.previous_status),
       json_build_object('status', r.status, 'row_version', r.row_version,
                         'birth_certificate_hash', r.birth_certificate_hash),
       null
from act
join public.birth_registry r on r.id::text = act.item;

insert into public.system_issues (code, severity, object_id, details, opened_at, resolved_at)
select 'FIX7_CERTIFIED', 'info', r.object_id,
       jsonb_build_object('change', 'fix7', 'previous_status', 'approved', 'row_version', r.row_version),
       r.updated_at, r.updated_at
from public.birth_registry r
join public.fix7_backup_birth_registry b on b.id = r.id;

insert into public.system_issues (code, severity, object_id, details, opened_at, resolved_at)
select 'FIX7_SUMMARY', 'info', null,
       jsonb_build_object('change', 'fix7', 'certified', count(*)), now(), null
from public.fix7_backup_birth_registry;
