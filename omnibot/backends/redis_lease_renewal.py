"""Renewing leases of Redis stream entries: one Lua script resets the idle time of entries a consumer still owns.

A stream entry's lease expires when it has been idle in the consumer
group's pending entries list (PEL) for the visibility timeout. Then
``XAUTOCLAIM`` hands it to another consumer. ``XCLAIM ... JUSTID`` by the
owning consumer with a minimum idle time of 0 resets that idle time, so the
lease lasts a full visibility timeout again. With ``JUSTID`` it does not
count a delivery, so the settle script, which compares delivery counts,
still accepts the ack.
The script checks the owner and the delivery count first, so it never takes
an entry from the consumer that took it over.
"""

import typing

# KEYS: stream
# ARGV: group, then (entry id, consumer, delivery count) per lease
# Returns one 1 (renewed) or 0 (no longer held) per lease.
RENEW_SCRIPT = """
local renewed = {}
for i = 2, #ARGV, 3 do
    local lease = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
    if lease and lease[2] == ARGV[i + 1] and lease[4] == tonumber(ARGV[i + 2]) then
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[i + 1], 0, ARGV[i], 'JUSTID')
        renewed[#renewed + 1] = 1
    else
        renewed[#renewed + 1] = 0
    end
end
return renewed
"""


def renew_arguments(group: str, leases: typing.Sequence) -> typing.List[typing.Union[str, int]]:
    """Return the ARGV of :data:`RENEW_SCRIPT` for ``leases`` (:class:`StreamLease` receipts)."""
    arguments: typing.List[typing.Union[str, int]] = [group]
    for lease in leases:
        arguments.extend((lease.entry_id, lease.consumer, lease.delivery_count))
    return arguments
