-- For every hour of the load window: fact_streams has one row per distinct listen event
-- in raw (sessionId, itemInSession), and fact_page_views one per distinct page view.
-- Returns the hours where the counts differ.
{% set topics = [
    ('listen_events', 'fact_streams'),
    ('page_view_events', 'fact_page_views'),
] %}

{% for topic, fact in topics %}
{% if not loop.first %}union all{% endif %}
select *
from (
    select
        '{{ fact }}' as fact,
        coalesce(raw_counts.event_hour, fact_counts.event_hour) as event_hour,
        coalesce(raw_counts.events, 0) as raw_events,
        coalesce(fact_counts.events, 0) as fact_rows
    from (
        select event_hour, count(*) as events
        from (
            select distinct event_hour, sessionId, itemInSession
            from {{ source('raw', topic) }}
            where {{ in_window('event_hour') }}
        ) as distinct_events
        group by event_hour
    ) as raw_counts
    full outer join (
        select event_hour, count(*) as events
        from {{ ref(fact) }}
        where {{ in_window('event_hour') }}
        group by event_hour
    ) as fact_counts
        on fact_counts.event_hour = raw_counts.event_hour
) as compared
where raw_events <> fact_rows
{% endfor %}
