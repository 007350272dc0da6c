"""Process plumbing the services share: logging and signals, periodic jobs, a pool
of processes, the clock a loop waits on."""
