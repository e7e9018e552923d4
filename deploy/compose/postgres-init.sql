-- Each service owns its database (their migrations must not share one _sqlx_migrations table).
CREATE DATABASE switchboard_auth;
CREATE DATABASE switchboard_messaging;
