from django.apps import AppConfig


class TicketsReplicaConfig(AppConfig):
    name = "tickets_replica"
    verbose_name = "Tickets (replica of the tickets service)"
