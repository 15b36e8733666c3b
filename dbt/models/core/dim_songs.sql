{#- A song as the listen events identify it: (artist, title, duration). Incremental:
    new songs of the window are added, known ones rewritten unchanged. A hook for
    Million Song metadata (year, tempo, ...) would join here on (artist, title). -#}
{{ config(materialized='incremental', unique_key='song_key') }}

select distinct
    {{ surrogate_key(['artist', 'song', 'duration']) }} as song_key,
    {{ surrogate_key(['artist']) }} as artist_key,
    artist,
    song as title,
    duration
from {{ ref('stg_listen_events') }}
where {{ incremental_window('event_hour') }}
