UPDATE mlops.circuit_breakers
SET state = :state, failure_count = :failure_count, opened_at = :opened_at,
    half_open_in_flight = :half_open_in_flight, half_open_successes = :half_open_successes,
    last_error = :last_error, updated_at = :updated_at
WHERE name = :n
