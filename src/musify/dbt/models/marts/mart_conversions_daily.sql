{#- Upgrades, downgrades and cancellations per day, every day of the data (zeros too).
    Incremental: the days the load window touches are counted again. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ mart_delete_days() }}",
    partition_by=day_partition('date', 'date'),
) }}

with days as (
    select distinct date
    from {{ ref('dim_datetime') }}
    where {{ mart_days_window('datetime_hour') }}
),

changes as (
    select
        cast(event_hour as date) as date,
        sum(case when change_type = 'upgrade' then 1 else 0 end) as upgrades,
        sum(case when change_type = 'downgrade' then 1 else 0 end) as downgrades,
        sum(case when change_type = 'cancel' then 1 else 0 end) as cancellations
    from {{ ref('fact_status_changes') }}
    where {{ mart_days_window('event_hour') }}
    group by cast(event_hour as date)
)

select
    days.date,
    cast(coalesce(changes.upgrades, 0) as {{ dbt.type_int() }}) as upgrades,
    cast(coalesce(changes.downgrades, 0) as {{ dbt.type_int() }}) as downgrades,
    cast(coalesce(changes.cancellations, 0) as {{ dbt.type_int() }}) as cancellations
from days
left join changes on changes.date = days.date
