"""Notifier implementations behind receiver.slack.make_notifier: queue, bot, webhook, console."""
