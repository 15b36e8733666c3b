{#- A song as the listen events identify it: (artist, title, duration), with the
    Million Song metadata (year, album, tempo, ...) when the user supplied a songs.csv
    (MUSIFY_SONG_METADATA; null columns otherwise). Incremental: the window's new songs
    are added; when the loaded metadata file changed since the last run
    (metadata_version), every known song is rewritten with it. -#}
{{ config(materialized='incremental', unique_key='song_key') }}

{%- set metadata = ref('stg_song_metadata') -%}
{%- set refresh_all = false -%}
{%- if execute and is_incremental() -%}
  {%- set versions -%}
    select
        coalesce((select max(source_sha256) from {{ metadata }}), '') as loaded,
        coalesce((select max(metadata_version) from {{ this }}), '') as built
  {%- endset -%}
  {%- set row = run_query(versions).rows[0] -%}
  {%- set refresh_all = row[0] != row[1] -%}
{%- endif %}

with played as (
    select artist, song as title, duration
    from {{ ref('stg_listen_events') }}
    where {{ incremental_window('event_hour') }}
    {% if refresh_all %}
    union all
    select artist, title, duration from {{ this }}
    {% endif %}
),

songs as (
    select distinct artist, title, duration from played
)

select
    {{ surrogate_key(['songs.artist', 'songs.title', 'songs.duration']) }} as song_key,
    {{ surrogate_key(['songs.artist']) }} as artist_key,
    songs.artist,
    songs.title,
    songs.duration,
    meta.track_id,
    meta.release,
    meta.year,
    meta.tempo,
    meta.loudness,
    meta.musical_key,
    meta.musical_mode,
    meta.hotness,
    (select max(source_sha256) from {{ metadata }}) as metadata_version
from songs
left join {{ metadata }} as meta
    on meta.artist = songs.artist
    and meta.title = songs.title
    and meta.duration = songs.duration
