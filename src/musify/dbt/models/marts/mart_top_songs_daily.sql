{#- Each day's 100 most played songs per state (ties share a rank), ranked from
    mart_song_streams_daily. Incremental: the load window's days are ranked again. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ mart_delete_days() }}",
    partition_by=day_partition('date', 'date'),
) }}

{{ top_daily('mart_song_streams_daily', ['song_key', 'song', 'artist']) }}
