{{ stage_events('status_change_events', [
    clean_string('page') ~ ' as page',
    clean_string('auth') ~ ' as auth',
    'lower(' ~ clean_string('level') ~ ') as level',
]) }}
