"""One module per trigger: parse the event, call the core, map errors to ack (return) or retry (raise)."""
