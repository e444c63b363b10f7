"""Generate large fake workspaces for benchmarks."""

from omnibot.fake_slack.workspace import default_workspace

# Every DELETED_EVERY-th generated user is deactivated and every BOT_EVERY-th
# is a bot user, so that consumers meet both kinds in long listings.
DELETED_EVERY = 50
BOT_EVERY = 100

# Every PRIVATE_EVERY-th generated channel is private, and ARCHIVED_EVERY-th archived.
PRIVATE_EVERY = 10
ARCHIVED_EVERY = 20


def generate_workspace(users: int, channels: int) -> dict:
    """Return a workspace dict with exactly ``users`` users and ``channels`` conversations.

    The placeholder users (testbot, alice, bob) and conversations (general,
    ops-private, the DM with alice) come first, as far as the counts allow.
    Generated users have ids ``U2nnnnnnnn``, names ``user<n>`` and emails
    ``user<n>@example.com``. Generated channels have ids ``C2nnnnnnnn``
    (``G2nnnnnnnn`` when private) and names ``channel-<n>``. The output is
    the same for the same arguments.

    Raises:
        ValueError: A count is negative.
    """
    if users < 0 or channels < 0:
        raise ValueError(f"users and channels must be >= 0, not {users} and {channels}")

    workspace = default_workspace()
    workspace["users"] = workspace["users"][:users]
    workspace["channels"] = workspace["channels"][:channels]

    for number in range(1, users - len(workspace["users"]) + 1):
        workspace["users"].append(_generated_user(number))
    for number in range(1, channels - len(workspace["channels"]) + 1):
        workspace["channels"].append(_generated_channel(number))
    return workspace


def _generated_user(number: int) -> dict:
    name = f"user{number}"
    user = {
        "id": f"U2{number:08d}",
        "name": name,
        "real_name": f"User {number}",
        "deleted": number % DELETED_EVERY == 0,
        "is_bot": number % BOT_EVERY == 0,
        "profile": {"display_name": name, "email": f"{name}@example.com"},
    }
    if user["is_bot"]:
        user["profile"]["bot_id"] = f"B2{number:08d}"
    return user


def _generated_channel(number: int) -> dict:
    private = number % PRIVATE_EVERY == 0
    return {
        "id": f"{'G' if private else 'C'}2{number:08d}",
        "name": f"channel-{number}",
        "is_channel": not private,
        "is_group": private,
        "is_private": private,
        "is_archived": number % ARCHIVED_EVERY == 0,
    }
