{#- The complete dim_users rows of every user with level runs in the load window: what
    dim_users replaces for those users in this run (it deletes their rows, then inserts
    these). Reads the window's runs, the runs after it (none in an hourly run) and the
    users' current dim_users rows, never the event history.

    Periods first seen before the window cannot change (the window's hours are the only
    ones reloaded), except that the last of them (the "anchor", the period in force
    when the window starts) may end earlier or absorb the window's first runs. So the
    anchor stands in for all of its observations before the window, and gaps and
    islands run over [anchor, runs from the window start on]; earlier periods are kept.
    A first period that starts at registration but was first seen in the window is no
    anchor: it has no observation before the window.

    Keys are stable: a recomputed period keeps the key of the existing period it
    continues (same start and level first, then same natural key, then the earliest
    overlapping period of the same level, each existing key used once), so a late event
    that moves a period's start or splits it never changes the key facts already hold.
    New periods get surrogate_key(user_id, valid_from, level) (salted in the unlikely case that
    key is taken by another period of the user).

    A first build (no dim_users yet) or a full refresh reads every run. -#}
{{ config(materialized='table') }}

{%- set existing = none -%}
{%- if execute and not flags.FULL_REFRESH -%}
  {%- set existing = adapter.get_relation(
        database=this.database, schema=this.schema, identifier='dim_users') -%}
{%- endif -%}
{%- set everything = existing is none -%}

with window_runs as (
    select user_id
    from {{ ref('int_user_level_runs') }}
    where {% if everything %}1 = 1{% else %}{{ in_window('event_hour') }}{% endif %}
),

affected as (
    select distinct user_id from window_runs
),

later_runs as (
    select runs.*
    from {{ ref('int_user_level_runs') }} as runs
    {% if not everything %}
    where runs.event_hour >= {{ window_start() }}
        and runs.user_id in (select user_id from affected)
    {% endif %}
),

existing as (
    {% if everything %}
    select
        cast(null as {{ key_type() }}) as user_key,
        cast(null as {{ dbt.type_bigint() }}) as user_id,
        cast(null as {{ dbt.type_string() }}) as level,
        cast(null as {{ dbt.type_int() }}) as period_no,
        cast(null as {{ dbt.type_timestamp() }}) as valid_from,
        cast(null as {{ dbt.type_timestamp() }}) as valid_to,
        cast(null as {{ dbt.type_timestamp() }}) as first_seen
    from (select 1 as one) as nothing
    where 1 = 0
    {% else %}
    select user_key, user_id, level, period_no, valid_from, valid_to, first_seen
    from {{ existing }}
    where user_id in (select user_id from affected)
    {% endif %}
),

anchor as (
    select user_key, user_id, level, period_no, valid_from, first_seen
    from (
        select
            existing.*,
            row_number() over (partition by user_id order by valid_from desc) as latest
        from existing
        where first_seen < {{ window_start() }}
    ) as before_window
    where latest = 1
),

kept as (
    select existing.*
    from existing
    inner join anchor on anchor.user_id = existing.user_id
    where existing.valid_from < anchor.valid_from
),

replaced as (
    select existing.*
    from existing
    left join anchor on anchor.user_id = existing.user_id
    where anchor.user_id is null or existing.valid_from >= anchor.valid_from
),

attributes as (
    select user_id, first_name, last_name, gender, registration
    from (
        select
            later_runs.*,
            row_number() over (
                partition by user_id order by event_hour desc, run_no desc
            ) as recency
        from later_runs
    ) as ranked
    where recency = 1
),

pieces as (
    select
        user_id,
        valid_from as order_ts,
        0 as order_no,
        level,
        valid_from as piece_start,
        first_seen as piece_seen,
        1 as is_anchor
    from anchor
    union all
    select user_id, event_hour, run_no, level, run_start, run_start, 0
    from later_runs
),

flagged as (
    select
        pieces.*,
        lag(level) over (partition by user_id order by order_ts, order_no) as previous_level
    from pieces
),

grouped as (
    select
        flagged.*,
        sum(case when previous_level is null or previous_level <> level then 1 else 0 end)
            over (partition by user_id order by order_ts, order_no
                  rows between unbounded preceding and current row) as grp
    from flagged
),

periods as (
    select
        user_id,
        grp,
        min(level) as level,
        min(piece_start) as first_start,
        min(piece_seen) as first_seen,
        max(is_anchor) as has_anchor
    from grouped
    group by user_id, grp
),

bounded as (
    select
        periods.user_id,
        periods.grp,
        periods.level,
        case
            when periods.has_anchor = 1 then periods.first_start
            when periods.grp = 1 and attributes.registration < periods.first_seen
                then attributes.registration
            else periods.first_seen
        end as valid_from,
        periods.first_seen,
        coalesce(anchor.period_no - 1, 0) + periods.grp as period_no
    from periods
    inner join attributes on attributes.user_id = periods.user_id
    left join anchor on anchor.user_id = periods.user_id
),

new_periods as (
    select
        bounded.*,
        lead(valid_from) over (partition by user_id order by grp) as next_from,
        {{ surrogate_key(['user_id', 'valid_from', 'level']) }} as natural_key
    from bounded
),

candidates as (
    select
        new_periods.user_id,
        new_periods.valid_from as new_from,
        replaced.user_key,
        replaced.valid_from as old_from,
        case
            when replaced.valid_from = new_periods.valid_from then 0
            when replaced.user_key = new_periods.natural_key then 1
            else 2
        end as priority
    from new_periods
    inner join replaced
        on replaced.user_id = new_periods.user_id
        and replaced.level = new_periods.level
        and replaced.valid_from < coalesce(new_periods.next_from, {{ far_future() }})
        and new_periods.valid_from < replaced.valid_to
),

claimed as (
    select user_id, new_from, user_key
    from (
        select
            candidates.*,
            row_number() over (
                partition by user_key order by priority, new_from
            ) as key_rank,
            row_number() over (
                partition by user_id, new_from order by priority, old_from
            ) as period_rank
        from candidates
    ) as ranked
    where key_rank = 1 and period_rank = 1
),

keyed as (
    select new_periods.*, claimed.user_key as claimed_key
    from new_periods
    left join claimed
        on claimed.user_id = new_periods.user_id
        and claimed.new_from = new_periods.valid_from
),

taken as (
    select user_id, user_key from kept
    union all
    select user_id, claimed_key as user_key from keyed where claimed_key is not null
),

new_rows as (
    select
        coalesce(
            keyed.claimed_key,
            case
                when taken.user_key is null then keyed.natural_key
                else {{ surrogate_key(['keyed.user_id', 'keyed.valid_from', 'keyed.level',
                                       "'late'"]) }}
            end
        ) as user_key,
        keyed.user_id,
        keyed.level,
        cast(keyed.period_no as {{ dbt.type_int() }}) as period_no,
        keyed.valid_from,
        coalesce(keyed.next_from, {{ far_future() }}) as valid_to,
        keyed.first_seen
    from keyed
    left join taken
        on taken.user_id = keyed.user_id
        and taken.user_key = keyed.natural_key
        and keyed.claimed_key is null
),

all_rows as (
    select user_key, user_id, level, period_no, valid_from, valid_to, first_seen from kept
    union all
    select user_key, user_id, level, period_no, valid_from, valid_to, first_seen from new_rows
)

select
    all_rows.user_key,
    all_rows.user_id,
    attributes.first_name,
    attributes.last_name,
    attributes.gender,
    attributes.registration,
    all_rows.level,
    all_rows.period_no,
    all_rows.valid_from,
    all_rows.valid_to,
    all_rows.valid_to = {{ far_future() }} as is_current,
    all_rows.first_seen
from all_rows
inner join attributes on attributes.user_id = all_rows.user_id
