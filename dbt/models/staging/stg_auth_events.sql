{{ stage_events('auth_events', [
    'lower(' ~ clean_string('level') ~ ') as level',
    'cast(success as ' ~ dbt.type_boolean() ~ ') as success',
]) }}
