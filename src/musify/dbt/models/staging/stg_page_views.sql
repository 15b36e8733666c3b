{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
{{ stage_events('page_view_events', [
    clean_string('page') ~ ' as page',
    clean_string('auth') ~ ' as auth',
    'upper(' ~ clean_string('method') ~ ') as method',
    'cast(status as ' ~ dbt.type_int() ~ ') as status',
    'lower(' ~ clean_string('level') ~ ') as level',
    clean_string('artist') ~ ' as artist',
    clean_string('song') ~ ' as song',
    'cast(duration as ' ~ dbt.type_float() ~ ') as duration',
    "case when " ~ clean_string('page') ~ " = 'NextSong' then "
        ~ staged_key(song_key_spec()) ~ " end as song_key",
], [song_key_spec()]) }}
