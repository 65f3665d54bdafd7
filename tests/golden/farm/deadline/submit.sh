#!/bin/sh
deadlinecommand -SubmitMultipleJobs -dependent -job $TMP/job/analyse.job $TMP/job/analyse_plugin.job -job $TMP/job/render.job $TMP/job/render_plugin.job
