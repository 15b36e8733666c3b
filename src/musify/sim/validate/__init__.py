"""``musify validate``: does a folder of generated events behave like eventsim?

``validate_dir(directory, config)`` reads the four topic files a ``--output-dir`` run
wrote (``<topic>.jsonl``), streaming them line by line and keeping only a few numeric
columns per event, and returns a ``Report``: one row per check.

**Structure** (exact; docs/eventsim-spec.md §5.6, §6.2 and §10 "Further checks", with
the engine's documented deviations from eventsim):

- every line is valid for its topic (``musify.events.check_event``); ``zip`` is a
  string; auth events have no ``auth`` and no ``page`` field;
- ``userId`` and the user details (and ``tag``) are present iff ``show-user-details``
  is true for the event's auth (auth events: the auth of their page view);
- every page view is a state of the config, every step within a session is one of the
  config's transitions, and a session's first event (``itemInSession`` 0) is a
  ``new-session`` state of its (auth, level) group;
- ``itemInSession`` is unique and contiguous within a session, and time never goes
  back within a session or within a file; timestamps are whole seconds and no
  identified event precedes the user's ``registration``;
- a redirect (status 300-398) comes exactly 1 s after the previous event of its
  session; a NextSong whose session's previous song has not ended when the previous
  event happened comes exactly when that song ends (start + ⌊duration⌋);
- listen events are exactly the NextSong page views, status-change events exactly the
  page views of ``STATUS_CHANGE_PAGES``, auth events exactly the page views right after
  a Login page (with ``success`` = auth is Logged In); each one carries the same ts,
  session, item, auth/level, user and device as its page view;
- a session belongs to one user with one device; a user has one name, registration and
  device;
- per identified user, consecutive sessions: the next starts in the (auth, level) in
  which the previous ended (skipped if the config can change group without showing
  the user), at least ``session-gap`` seconds later, and only a user's first session
  may have begun before the window; nothing follows a session that ended churned.

**Statistics**, against the config's absorbing Markov chain (``musify.sim.markov``)
*conditioned on the observed mix of session starts*: the sessions counted are those
whose first event (``itemInSession`` 0) is in the files and that started at least
``COMPLETE_MARGIN`` before the last event (so they are complete); their start groups
are the weights. Upgrades over a long run change that mix, not the expectations given
it, so drift does not matter. Checked: events per session, share of single-event
sessions, the share of every page, level and status code, identified events, auth
events per page view and their success rate, status-change events per page view, the
first page of sessions per start group (against the ``new-session`` weights) and the
group each session ends in per start group (the session-level chain).

Tolerances. Events of one session are not independent (a paid session plays dozens of
songs), so a share's standard error is that of a ratio estimator over sessions, and it
comes from the chain itself rather than from the sample: the exact second moments of
the visit counts of an absorbing chain (``Chain.ratio_variance``), summed over the
observed sessions per start group. Unlike a sample estimate it is right for small runs
and for shares that are rare or never seen. A statistic passes when it is within
``Z`` = 4.5 standard errors of its expectation; the tolerance is never below a floor:

- shares: ``SHARE_FLOOR_ABS`` (0.05 percentage points) + ``SHARE_FLOOR_REL`` (2 %) of
  the expected share. The floor absorbs immaterial differences in huge runs (the model
  ignores, e.g., sessions cut by the end of the window) and is what a big run gets:
  ±1.7 points for NextSong's 84 %, ±0.07 points for a 1 % page;
- rare shares (under 100 expected occurrences): up to the upper Poisson quantile of
  the expected count (scaled by the model's dispersion), so that two Cancel pages where
  0.1 was expected do not fail a small run;
- means (events per session): ``MEAN_FLOOR_REL`` (3 %) of the expected mean;
- an occurrence of something the chain cannot produce (expected share exactly 0)
  always fails.

At 4.5 SE each row fails by chance with probability ~1e-5; in calibration runs (three
configs, 100 to 20,000 users, 1 to 28 days, ~100 runs) no statistical row failed,
and the z-scores were close to standard normal. Session-level proportions (first page,
end group, single-event sessions) use binomial standard errors of the session counts.

Parts (one component over several small modules; each one's docstring says more):

- ``constants``: ``Z``, the tolerance floors, ``COMPLETE_MARGIN``, ``MAX_EXAMPLES``,
  the topic file names and the numpy array aliases;
- ``report``: ``Row`` (one check), ``Report`` (rendering with Rich, ``as_dict``) and
  the number formatting;
- ``read``: the readers that stream each topic file into compact columns (``_Vocab``,
  ``_Cols``, ``_Ctx``, ``_read_*``) and count per-line violations (``_Issues``);
- ``structure``: ``STRUCTURE_CHECKS`` (the names of the exact checks), the page views
  sorted by session (``_PV``) and the helpers that make their rows (``_example``,
  ``_violations``);
- ``base``: ``_CheckerBase``, the checker's inputs and tables per state code;
- ``topics``: ``_TopicChecks``, the other three topic files against the page views;
- ``users``: ``_UserChecks``, one user and device per session, and each user's chain
  of sessions;
- ``stats``: ``_StatisticsChecks`` and the share rows (``_share_row``,
  ``_poisson_upper``): the statistics against the chain;
- ``checker``: ``validate_dir`` and ``_Checker``, which combines the three groups of
  checks above with the file-order, state, item, time, redirect and song-timing checks
  it runs itself.
"""

from __future__ import annotations

from musify.sim.validate.checker import validate_dir
from musify.sim.validate.constants import COMPLETE_MARGIN as COMPLETE_MARGIN
from musify.sim.validate.constants import DETAIL_KEYS as DETAIL_KEYS
from musify.sim.validate.constants import MAX_EXAMPLES as MAX_EXAMPLES
from musify.sim.validate.constants import MEAN_FLOOR_REL as MEAN_FLOOR_REL
from musify.sim.validate.constants import SHARE_FLOOR_ABS as SHARE_FLOOR_ABS
from musify.sim.validate.constants import SHARE_FLOOR_REL as SHARE_FLOOR_REL
from musify.sim.validate.constants import TOPIC_FILES as TOPIC_FILES
from musify.sim.validate.constants import Z as Z
from musify.sim.validate.report import Report, Row
from musify.sim.validate.structure import STRUCTURE_CHECKS as STRUCTURE_CHECKS

__all__ = ["Report", "Row", "validate_dir"]
