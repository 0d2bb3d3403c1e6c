"""Synapse module for mxpulse's end-to-end tests: runs Synapse's own user_daily_visits job
every second instead of every five minutes, so that a test sees its visits without waiting.

Each run looks at the whole current day, as Synapse's first run after a start does (its
window otherwise begins at the previous run, and user_ips rows reach the database in 5 s
batches: a 1 s window would miss them). The rows are the ones Synapse itself writes; the
job's own LEFT JOIN keeps it from writing a (user, device, day) twice."""


class FastDailyVisits:
    def __init__(self, config, api):
        store = api._store  # the module API has no public handle on this job

        async def run():
            store._last_user_visit_update = store._get_start_of_day()
            await store.generate_user_daily_visits()

        api.looping_background_call(run, 1000, desc="mxpulse_fast_daily_visits")

    @staticmethod
    def parse_config(config):
        return config
