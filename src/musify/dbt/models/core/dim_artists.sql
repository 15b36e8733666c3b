{{ config(materialized='incremental', unique_key='artist_key') }}

select distinct
    artist_key,
    artist
from {{ ref('stg_listen_events') }}
where {{ incremental_window('event_hour') }}
