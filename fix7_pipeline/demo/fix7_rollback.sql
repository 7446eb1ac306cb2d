-- FIX7 rollback (sample): put back exactly what fix7_apply.sql changed.
-- Sequences stay advanced (a warning in the restore diff, not a failure).
-- No BEGIN/COMMIT: the pipeline runs this file in one transaction.

update public.birth_registry r
set status = b.status,
    previous_status = b.previous_status,
    row_version = b.row_version,
    updated_at = b.updated_at,
    born_at = b.born_at,
    birth_certificate_hash = b.birth_certificate_hash
from public.fix7_backup_birth_registry b
where b.id = r.id;

-- Each deleted revision or activity is checked against the rows that could reference it
-- (directus_revisions.parent and .activity, both unindexed in production): without an index that is a
-- scan of directus_revisions per deleted row. Two indexes for the length of this transaction.
create index fix7_rollback_revisions_parent on public.directus_revisions (parent);
create index fix7_rollback_revisions_activity on public.directus_revisions (activity);

delete from public.directus_revisions
where activity in (select id from public.directus_activity where origin = 'fix7:apply');

delete from public.directus_activity where origin = 'fix7:apply';

drop index public.fix7_rollback_revisions_parent;
drop index public.fix7_rollback_revisions_activity;

delete from public.system_issues where code in ('FIX7_CERTIFIED', 'FIX7_SUMMARY');

alter table public.birth_registry drop column fix7_migrated;

drop table public.fix7_backup_birth_registry;
