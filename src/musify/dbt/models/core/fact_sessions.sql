{#- One row per session. Incremental: every session with an event in the window is
    recomputed from all of its page views (sessions span hours). To find those events
    without reading history, the sessions' existing rows give their hours: the scan
    covers [least(window start, their first hour), greatest(window end, their last
    hour + 1)), with partition pruning (the bounds are literals). Existing rows are
    looked up among sessions that started at most var('max_session_hours') before
    the window (default 168: a week of activity without a 30-minute pause); a longer
    session would be recomputed from its events of that week only.
    user_key is the dim_users row valid at the session's start; null for anonymous
    sessions. -#}
{{ config(
    materialized='incremental',
    unique_key='session_id',
    incremental_strategy=('merge' if target.type == 'bigquery' else 'delete+insert'),
    post_hook="{{ repoint_user_keys('session_start', 'session_start') }}",
    partition_by=day_partition('session_start'),
) }}
-- depends_on: {{ ref('int_dim_users_changes') }}

{%- set scan_from = window_start() -%}
{%- set scan_to = window_end() -%}
{%- if execute and is_incremental() -%}
  {%- set lookup -%}
    select min(session_start), max(session_end)
    from {{ this }}
    where session_start >= {{ dbt.dateadd('hour', -var('max_session_hours', 168),
                                          window_start()) }}
        and session_id in (
            select session_id from {{ ref('stg_page_views') }}
            where {{ in_window('event_hour') }}
        )
  {%- endset -%}
  {%- set found = run_query(lookup).rows[0] -%}
  {%- if found[0] is not none -%}
    {%- set hour = modules.datetime.timedelta(hours=1) -%}
    {%- set first = musify_naive_hour(found[0]) -%}
    {%- set last = musify_naive_hour(found[1]) + hour -%}
    {%- set start = musify_parse_ts(window_start_value()) -%}
    {%- set end = musify_parse_ts(window_end_value()) -%}
    {%- set scan_from = musify_ts_literal([start, first] | min) -%}
    {%- set scan_to = musify_ts_literal([end, last] | max) -%}
  {%- endif -%}
{%- endif %}

with touched as (
    select distinct session_id
    from {{ ref('stg_page_views') }}
    where {{ incremental_window('event_hour') }}
),

events as {{ inline_cte() }} (
    select views.*
    from {{ ref('stg_page_views') }} as views
    {% if is_incremental() %}
    where views.event_hour >= {{ scan_from }}
        and views.event_hour < {{ scan_to }}
        and views.session_id in (select session_id from touched)
    {% endif %}
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

{#- The session's first event (by ts, then item): ranked among the events at the
    session's start only, not by sorting every event. -#}
first_events as (
    select session_id, level, auth, location_key
    from (
        select
            events.session_id,
            events.level,
            events.auth,
            events.location_key,
            row_number() over (
                partition by events.session_id order by events.item_in_session
            ) as position
        from events
        inner join sessions
            on sessions.session_id = events.session_id
            and sessions.session_start = events.ts
    ) as at_start
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
    first_events.location_key
from sessions
inner join first_events on first_events.session_id = sessions.session_id
left join {{ ref('dim_users') }} as users
    on users.user_id = sessions.user_id
    and sessions.session_start >= users.valid_from
    and sessions.session_start < users.valid_to
