"""Training workers: what each registered, how much memory a job needs, and which queue it goes
to so that a worker that can hold it takes it."""
