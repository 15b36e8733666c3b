{#- One row per identified user and hour with any event: the grain every user count of
    the dashboard is taken from (active users per hour, day or range, total users,
    gender, level). state_code and level are those of the user's last event in the
    hour; gender is the user's current value. Incremental by hour like the facts. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=('merge' if target.type == 'bigquery' else 'append'),
    pre_hook="{{ delete_window('hour') }}",
    partition_by=(
        {'field': 'hour', 'data_type': 'timestamp', 'granularity': 'day'}
        if target.type == 'bigquery' else none
    ),
) }}

with events as {{ inline_cte() }} (
    select
        views.event_hour,
        views.user_id,
        views.ts,
        views.session_id,
        views.item_in_session,
        views.level,
        views.location_key
    from {{ ref('fact_page_views') }} as views
    where views.user_id is not null
        and {{ incremental_window('views.event_hour') }}
),

counts as (
    select event_hour, user_id, count(*) as events, max(ts) as last_ts
    from events
    group by event_hour, user_id
),

{#- The user's last event in the hour (by ts, session, item): ranked among the events
    at the hour's last ts only, not by sorting every event. -#}
last_events as (
    select event_hour, user_id, level, location_key
    from (
        select
            events.event_hour,
            events.user_id,
            events.level,
            events.location_key,
            row_number() over (
                partition by events.event_hour, events.user_id
                order by events.session_id desc, events.item_in_session desc
            ) as recency
        from events
        inner join counts
            on counts.event_hour = events.event_hour
            and counts.user_id = events.user_id
            and counts.last_ts = events.ts
    ) as at_last
    where recency = 1
),

genders as (
    select user_id, max(gender) as gender
    from {{ ref('dim_users') }}
    where is_current
    group by user_id
)

select
    last_events.event_hour as hour,
    cast(last_events.event_hour as date) as date,
    last_events.user_id,
    locations.state_code,
    genders.gender,
    last_events.level,
    cast(counts.events as {{ dbt.type_int() }}) as events
from last_events
inner join counts
    on counts.event_hour = last_events.event_hour and counts.user_id = last_events.user_id
left join {{ ref('dim_location') }} as locations
    on locations.location_key = last_events.location_key
left join genders on genders.user_id = last_events.user_id
