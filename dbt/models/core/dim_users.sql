{#- SCD type 2 on level: one row per user and level period.

    Every identified event (page views, which include every listen, listen events,
    successful logins) observes the user's level at its ts; a status change also
    observes the level *after* the change at its ts (Submit Upgrade -> paid, Submit
    Downgrade -> free, Cancel keeps the level), ordered after the event itself.
    Consecutive observations with the same level form a period (gaps and islands).
    valid_from: the period's first observation (the first period starts at
    registration, or the first event if that is earlier); valid_to: the next period's
    valid_from, far future for the current row. Ranges are therefore gap-free and
    half-open, [valid_from, valid_to). Names, gender and registration are type 1:
    the user's latest values on every row. Rebuilt in full each run (late events can
    split or merge periods anywhere in a user's history). -#}
{{ config(materialized='table') }}

with observations as (
    select user_id, ts, session_id, item_in_session, 0 as priority, level,
        first_name, last_name, gender, registration
    from {{ ref('stg_page_views') }}
    where user_id is not null and level is not null
    union all
    select user_id, ts, session_id, item_in_session, 0 as priority, level,
        first_name, last_name, gender, registration
    from {{ ref('stg_listen_events') }}
    where user_id is not null and level is not null
    union all
    select user_id, ts, session_id, item_in_session, 0 as priority, level,
        first_name, last_name, gender, registration
    from {{ ref('stg_auth_events') }}
    where user_id is not null and level is not null
    union all
    select user_id, ts, session_id, item_in_session, 1 as priority,
        case page
            when 'Submit Upgrade' then 'paid'
            when 'Submit Downgrade' then 'free'
            else level
        end as level,
        first_name, last_name, gender, registration
    from {{ ref('stg_status_changes') }}
    where user_id is not null and level is not null
),

ordered as (
    select
        user_id, ts, level,
        lag(level) over (
            partition by user_id order by ts, session_id, item_in_session, priority
        ) as previous_level,
        row_number() over (
            partition by user_id order by ts, session_id, item_in_session, priority
        ) as observation_no
    from observations
),

numbered as (
    select
        user_id, ts, level,
        sum(case when previous_level is null or previous_level <> level then 1 else 0 end)
            over (partition by user_id order by observation_no
                  rows between unbounded preceding and current row) as period_no
    from ordered
),

periods as (
    select user_id, period_no, min(level) as level, min(ts) as first_seen
    from numbered
    group by user_id, period_no
),

attributes as (
    select user_id, first_name, last_name, gender, registration
    from (
        select
            observations.*,
            row_number() over (
                partition by user_id
                order by ts desc, session_id desc, item_in_session desc, priority desc
            ) as recency
        from observations
    ) as latest
    where recency = 1
),

bounded as (
    select
        periods.user_id,
        periods.period_no,
        periods.level,
        case
            when periods.period_no = 1 and attributes.registration < periods.first_seen
                then attributes.registration
            else periods.first_seen
        end as valid_from,
        lead(periods.first_seen) over (
            partition by periods.user_id order by periods.period_no
        ) as next_from,
        attributes.first_name,
        attributes.last_name,
        attributes.gender,
        attributes.registration
    from periods
    inner join attributes on attributes.user_id = periods.user_id
)

select
    {{ surrogate_key(['user_id', 'valid_from']) }} as user_key,
    user_id,
    first_name,
    last_name,
    gender,
    registration,
    level,
    period_no,
    valid_from,
    coalesce(next_from, {{ far_future() }}) as valid_to,
    next_from is null as is_current
from bounded
