"""Partitions, schedules and sensors."""
