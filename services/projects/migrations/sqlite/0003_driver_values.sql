-- Daily values of the M&V plan's drivers (occupancy, production, degree days): the
-- independent variables of the baseline model. Days are "YYYY-MM-DD" (China Standard Time).
CREATE TABLE driver_values (
    project_id TEXT NOT NULL REFERENCES projects (id),
    driver     TEXT NOT NULL,
    day        TEXT NOT NULL,
    value      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project_id, driver, day)
);
