{#- Upgrades (free -> paid), downgrades and cancellations per hour and state. Only hours
    with a change have a row. Incremental by hour like the facts. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=('merge' if target.type == 'bigquery' else 'append'),
    pre_hook="{{ delete_window('hour') }}",
    partition_by=(
        {'field': 'hour', 'data_type': 'timestamp', 'granularity': 'day'}
        if target.type == 'bigquery' else none
    ),
) }}

select
    changes.event_hour as hour,
    locations.state_code,
    cast(sum(case when changes.change_type = 'upgrade' then 1 else 0 end)
        as {{ dbt.type_int() }}) as upgrades,
    cast(sum(case when changes.change_type = 'downgrade' then 1 else 0 end)
        as {{ dbt.type_int() }}) as downgrades,
    cast(sum(case when changes.change_type = 'cancel' then 1 else 0 end)
        as {{ dbt.type_int() }}) as cancellations
from {{ ref('fact_status_changes') }} as changes
left join {{ ref('dim_location') }} as locations
    on locations.location_key = changes.location_key
where {{ incremental_window('changes.event_hour') }}
group by changes.event_hour, locations.state_code
