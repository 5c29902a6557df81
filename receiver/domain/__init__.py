"""Pure decision logic: no network, no clocks, no logging imports."""
