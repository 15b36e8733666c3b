{#- One row per session. Incremental: every session with an event in the window is
    recomputed from all of its page views (sessions span hours). user_key is the
    dim_users row valid at the session's start; null for anonymous sessions. -#}
{{ config(materialized='incremental', unique_key='session_id') }}

with touched as (
    select distinct session_id
    from {{ ref('stg_page_views') }}
    where {{ incremental_window('event_hour') }}
),

events as (
    select views.*
    from {{ ref('stg_page_views') }} as views
    {% if is_incremental() %}
    where views.session_id in (select session_id from touched)
    {% endif %}
),

ordered as (
    select
        events.*,
        row_number() over (
            partition by session_id order by ts, item_in_session
        ) as position
    from events
),

sessions as (
    select
        session_id,
        min(ts) as session_start,
        max(ts) as session_end,
        count(*) as pages,
        sum(case when page = 'NextSong' then 1 else 0 end) as songs,
        max(user_id) as user_id
    from events
    group by session_id
),

first_events as (
    select session_id, level, auth, city, state_code, zip, lat, lon
    from ordered
    where position = 1
)

select
    sessions.session_id,
    users.user_key,
    sessions.user_id,
    sessions.session_start,
    sessions.session_end,
    {{ dbt.datediff('sessions.session_start', 'sessions.session_end', 'second') }} as duration_s,
    cast(sessions.pages as {{ dbt.type_int() }}) as pages,
    cast(sessions.songs as {{ dbt.type_int() }}) as songs,
    first_events.level as level_at_start,
    first_events.auth as auth_at_start,
    {{ datetime_key(dbt.date_trunc('hour', 'sessions.session_start')) }} as datetime_key,
    {{ surrogate_key(['first_events.city', 'first_events.state_code', 'first_events.zip',
                      'first_events.lat', 'first_events.lon']) }} as location_key
from sessions
inner join first_events on first_events.session_id = sessions.session_id
left join {{ ref('dim_users') }} as users
    on users.user_id = sessions.user_id
    and sessions.session_start >= users.valid_from
    and sessions.session_start < users.valid_to
