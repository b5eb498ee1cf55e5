"""One router per resource; handlers validate, call one function of the domain, shape the answer.
What they share (the `Service`: settings, engine, admission) is injected with `Depends`."""
