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

with events as (
    select
        views.event_hour,
        views.user_id,
        views.level,
        views.location_key,
        row_number() over (
            partition by views.event_hour, views.user_id
            order by views.ts desc, views.session_id desc, views.item_in_session desc
        ) as recency
    from {{ ref('fact_page_views') }} as views
    where views.user_id is not null
        and {{ incremental_window('views.event_hour') }}
),

counts as (
    select event_hour, user_id, count(*) as events
    from events
    group by event_hour, user_id
),

genders as (
    select user_id, max(gender) as gender
    from {{ ref('dim_users') }}
    where is_current
    group by user_id
)

select
    events.event_hour as hour,
    cast(events.event_hour as date) as date,
    events.user_id,
    locations.state_code,
    genders.gender,
    events.level,
    cast(counts.events as {{ dbt.type_int() }}) as events
from events
inner join counts
    on counts.event_hour = events.event_hour and counts.user_id = events.user_id
left join {{ ref('dim_location') }} as locations
    on locations.location_key = events.location_key
left join genders on genders.user_id = events.user_id
where events.recency = 1
