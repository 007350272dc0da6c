"""What travels between the services and what it means: the message schemas, the
topology they travel over, what a handler raises, a dead letter's headers. Plain
data: no broker client."""
