"""Tracking by embedding: Kalman motion, two-stage association, MOTChallenge output."""
