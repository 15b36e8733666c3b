{{ stage_events('page_view_events', [
    clean_string('page') ~ ' as page',
    clean_string('auth') ~ ' as auth',
    'upper(' ~ clean_string('method') ~ ') as method',
    'cast(status as ' ~ dbt.type_int() ~ ') as status',
    'lower(' ~ clean_string('level') ~ ') as level',
    clean_string('artist') ~ ' as artist',
    clean_string('song') ~ ' as song',
    'cast(duration as ' ~ dbt.type_float() ~ ') as duration',
]) }}
