{#- One row per page view (every event). Incremental by event hour like fact_streams. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    post_hook="{{ repoint_user_keys('ts', 'event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
-- depends_on: {{ ref('int_dim_users_changes') }}

select
    views.event_id as page_view_id,
    views.session_id,
    views.item_in_session,
    views.ts,
    views.event_hour,
    {{ datetime_key('views.event_hour') }} as datetime_key,
    users.user_key,
    views.user_id,
    views.location_key,
    views.song_key,
    views.page,
    views.auth,
    views.method,
    views.status,
    views.level
from {{ ref('stg_page_views') }} as views
left join {{ ref('dim_users') }} as users
    on users.user_id = views.user_id
    and views.ts >= users.valid_from
    and views.ts < users.valid_to
where {{ incremental_window('views.event_hour') }}
