"""Virtual agents: one state machine each, and the pool that maps 899 numbers to them."""
