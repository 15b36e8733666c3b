{{ stage_events('listen_events', [
    clean_string('artist') ~ ' as artist',
    clean_string('song') ~ ' as song',
    'cast(duration as ' ~ dbt.type_float() ~ ') as duration',
    clean_string('auth') ~ ' as auth',
    'lower(' ~ clean_string('level') ~ ') as level',
]) }}
