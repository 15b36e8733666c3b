{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
{{ stage_events('listen_events', [
    clean_string('artist') ~ ' as artist',
    clean_string('song') ~ ' as song',
    'cast(duration as ' ~ dbt.type_float() ~ ') as duration',
    clean_string('auth') ~ ' as auth',
    'lower(' ~ clean_string('level') ~ ') as level',
    staged_key(song_key_spec()) ~ ' as song_key',
    staged_key(artist_key_spec()) ~ ' as artist_key',
], [song_key_spec(), artist_key_spec()]) }}
