"""What every role shares: settings from the environment (settings.py), waiting out a
database outage (database_outage, transient_errors), the broker's plain Redis client,
bringing the schema to head (migrate), and small facts about the machine (cuda,
numba_cache, alm_endpoint). Imports no other package of the project.
"""
