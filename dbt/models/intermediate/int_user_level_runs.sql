{#- The level observations of identified users, compressed per user and hour into runs
    of equal level: the input of dim_users (SCD2 on level) that an hourly run can read
    for a few hours instead of re-reading every event of history.

    Every identified event (page views, which include every listen, and successful
    logins) observes the user's level at its ts; a status change also
    observes the level *after* the change (Submit Upgrade -> paid, Submit Downgrade ->
    free, Cancel keeps the level), ordered after the event itself. Ordered by (ts,
    session, item, priority), consecutive equal levels within the hour form a run
    (gaps and islands); run_no orders runs within the hour. Each row also carries the
    user's attributes from the hour's latest observation (type 1 in dim_users).
    Incremental: the window's hours are replaced, like the facts. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}

{#- Page views are every event, listens included, so listen events add nothing. -#}
{% set sources = [
    ('stg_page_views', 0, 'level'),
    ('stg_auth_events', 0, 'level'),
    ('stg_status_changes', 1,
     "case page when 'Submit Upgrade' then 'paid' when 'Submit Downgrade' then 'free' "
     ~ "else level end"),
] %}

with observations as (
    {% for model, priority, level in sources %}
    select
        user_id, event_hour, ts, session_id, item_in_session,
        {{ priority }} as priority,
        {{ level }} as level,
        first_name, last_name, gender, registration
    from {{ ref(model) }}
    where user_id is not null and level is not null
        and {{ incremental_window('event_hour') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

ordered as (
    select
        observations.*,
        lag(level) over (
            partition by user_id, event_hour
            order by ts, session_id, item_in_session, priority
        ) as previous_level,
        row_number() over (
            partition by user_id, event_hour
            order by ts desc, session_id desc, item_in_session desc, priority desc
        ) as recency
    from observations
),

numbered as (
    select
        ordered.*,
        sum(case when previous_level is null or previous_level <> level then 1 else 0 end)
            over (partition by user_id, event_hour
                  order by ts, session_id, item_in_session, priority
                  rows between unbounded preceding and current row) as run_no
    from ordered
),

runs as (
    select
        user_id,
        event_hour,
        run_no,
        min(level) as level,
        min(ts) as run_start,
        max(ts) as run_end,
        count(*) as observations
    from numbered
    group by user_id, event_hour, run_no
),

latest as (
    select user_id, event_hour, first_name, last_name, gender, registration
    from numbered
    where recency = 1
)

select
    runs.user_id,
    runs.event_hour,
    cast(runs.run_no as {{ dbt.type_int() }}) as run_no,
    runs.level,
    runs.run_start,
    runs.run_end,
    cast(runs.observations as {{ dbt.type_int() }}) as observations,
    latest.first_name,
    latest.last_name,
    latest.gender,
    latest.registration
from runs
inner join latest
    on latest.user_id = runs.user_id and latest.event_hour = runs.event_hour
