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

with observations as {{ inline_cte() }} (
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

{#- A level changes in few hours of a user: one aggregate finds them, and only their
    observations are ordered (window functions sort; sorting every observation was
    most of this model's time). In the other hours the hour is one run. -#}
hours as (
    select
        user_id,
        event_hour,
        min(level) as min_level,
        max(level) as max_level,
        min(ts) as first_ts,
        max(ts) as last_ts,
        count(*) as observations
    from observations
    group by user_id, event_hour
),

changing as (
    select observations.*
    from observations
    inner join hours
        on hours.user_id = observations.user_id and hours.event_hour = observations.event_hour
    where hours.min_level <> hours.max_level
),

{#- Observations can tie on (ts, session, item, priority): a login is both a page view
    and an auth event. Ordering by level last makes tied rows interchangeable, and the
    running sum's default frame (range: the current row and its peers) gives every
    tied row the same run whichever order each window put them in. -#}
ordered as (
    select
        changing.*,
        lag(level) over (
            partition by user_id, event_hour
            order by ts, session_id, item_in_session, priority, level
        ) as previous_level
    from changing
),

numbered as (
    select
        ordered.*,
        sum(case when previous_level is null or previous_level <> level then 1 else 0 end)
            over (partition by user_id, event_hour
                  order by ts, session_id, item_in_session, priority, level) as run_no
    from ordered
),

runs as (
    select
        user_id,
        event_hour,
        1 as run_no,
        min_level as level,
        first_ts as run_start,
        last_ts as run_end,
        observations
    from hours
    where min_level = max_level
    union all
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

{#- The hour's latest observation (by ts, session, item, priority): among those at the
    hour's last ts, so only a handful of rows per hour are ranked. -#}
latest as (
    select user_id, event_hour, first_name, last_name, gender, registration
    from (
        select
            observations.*,
            row_number() over (
                partition by observations.user_id, observations.event_hour
                order by observations.session_id desc, observations.item_in_session desc,
                    observations.priority desc
            ) as recency
        from observations
        inner join hours
            on hours.user_id = observations.user_id
            and hours.event_hour = observations.event_hour
            and hours.last_ts = observations.ts
    ) as last_observed
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
