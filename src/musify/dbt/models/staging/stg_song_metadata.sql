{#- The Million Song metadata (raw.song_metadata, empty unless the user supplied a
    songs.csv), keyed like the events name a song: artist and title cleaned the way
    the generator's catalog loader cleans them ('_ ' stood for ', '; see
    musify.sim.catalog), duration as is. One row per (artist, title, duration): the
    lowest track_id wins. year 0 (unknown in the dataset) becomes null. -#}
with cleaned as (
    select
        replace(trim(artist_name), '_ ', ', ') as artist,
        replace(trim(title), '_ ', ', ') as title,
        cast(duration as {{ dbt.type_float() }}) as duration,
        track_id,
        song_id,
        artist_id,
        {{ clean_string('release') }} as release,
        nullif(year, 0) as year,
        tempo,
        loudness,
        {{ adapter.quote('key') }} as musical_key,
        {{ adapter.quote('mode') }} as musical_mode,
        song_hotttnesss as hotness,
        source_sha256
    from {{ source('raw', 'song_metadata') }}
    where artist_name is not null and title is not null and duration is not null
)

select *
from (
    select
        cleaned.*,
        row_number() over (
            partition by artist, title, duration order by track_id
        ) as duplicate_rank
    from cleaned
) as ranked
where duplicate_rank = 1
