{#- Each day's 100 most played artists per state (ties share a rank), ranked from
    mart_artist_streams_daily. Incremental: the load window's days are ranked again. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ mart_delete_days() }}",
    partition_by=day_partition('date', 'date'),
) }}

{{ top_daily('mart_artist_streams_daily', ['artist_key', 'artist']) }}
