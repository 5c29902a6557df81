"""Notifier implementations behind receiver.notify.factory.make_notifier: queue, bot, webhook, console."""
