"""Load generation: Kafka producer/consumer and open-loop HTTP load at a scheduled rate.

The achieved rate is measured (acknowledged messages, completed requests), never assumed:
each run ends with a ``RunResult`` that says whether the target was held and by how much not.
"""
