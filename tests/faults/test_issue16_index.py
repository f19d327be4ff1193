"""Issue 16's defects, each with the regression test named after it.

The index is checked against the test files, so renaming or deleting one of these tests (or a
parametrize id) fails here instead of silently dropping a defect from the fault suite.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# defect (issue 16's numbering; letters for the sub-items in the order the issue lists them) -> tests
DEFECTS: dict[str, tuple[str, ...]] = {
    "1a cross-site text/plain offers lock every peer slot (no Origin / Content-Type check)": (
        "faults/test_faults_server.py::test_cross_site_text_plain_offers_cannot_lock_the_peer_slots",
    ),
    "1b no timeout for sessions stuck connecting (offer without candidates)": (
        "faults/test_faults_server.py::test_stuck_ice_sessions_are_dropped_and_free_their_slot",
    ),
    "1c an offer whose client never connects holds a slot ~65 s": (
        "faults/test_faults_server.py::test_offer_whose_client_never_connects_frees_its_slot_within_the_timeout",
    ),
    "2 process exits 0 with an unedited copy when every frame fails": (
        "faults/test_faults_cli.py::test_process_exits_nonzero_when_every_frame_fails_although_faces_were_found",
        "faults/test_faults_cli.py::test_process_with_a_blank_prompt_is_refused_before_any_work",
    ),
    "3 truncated input: short output, exit 0, no warning": (
        "faults/test_faults_cli.py::test_truncated_input_is_a_warning_with_the_counts_and_an_error_with_strict",
    ),
    "4 tiny video: false face accepted and edited": (
        "faults/test_faults_pose.py::test_false_face_on_a_tiny_video_is_not_accepted",
        "faults/test_faults_pose.py::test_face_too_small_to_edit_counts_as_no_face_in_both_modes",
        "faults/test_faults_pose.py::test_implausible_detections_are_tiny_or_small_and_strongly_rolled",
    ),
    "5a weights import of a refused pickle: UnpicklingError suggesting weights_only=False": (
        "faults/test_faults_model.py::test_weights_import_of_a_bad_file_is_a_clear_error[refused-pickle]",
    ),
    "5b weights import of an empty file: EOFError": (
        "faults/test_faults_model.py::test_weights_import_of_a_bad_file_is_a_clear_error[empty]",
    ),
    "5c weights import of a text file: KeyError": (
        "faults/test_faults_model.py::test_weights_import_of_a_bad_file_is_a_clear_error[text]",
    ),
    "5d full disk: av.error.OSError after the whole run": (
        "faults/test_faults_cli.py::test_full_disk_is_a_clear_error_and_leaves_no_partial_output",
        "faults/test_faults_cli.py::test_full_disk_on_a_real_tiny_filesystem",
    ),
    "5e OUT an existing directory: IsADirectoryError after the run, .part.mp4 left": (
        "faults/test_faults_cli.py::test_output_that_is_a_directory_is_refused_before_the_run",
    ),
    "5f edit --out pointing at a file: FileExistsError": (
        "faults/test_faults_cli.py::test_edit_out_pointing_at_a_file_is_a_clear_error",
    ),
    "6 SIGTERM leaves a hidden .part.mp4": (
        "faults/test_faults_cli.py::test_signal_mid_run_leaves_no_partial_file[SIGTERM]",
    ),
    "7a deeply nested JSON to /offer: 500 with RecursionError": (
        "faults/test_faults_server.py::test_hostile_offer_json_is_a_400_not_a_500[deep-nesting]",
    ),
    "7b deeply nested JSON over the data channel tears the peer down": (
        "faults/test_faults_server.py::test_bad_data_channel_messages_get_an_error_and_the_peer_stays_alive[deep-nesting]",
    ),
    "7c prompt_image 'data:image/png;base64,' tears the peer down": (
        "faults/test_faults_server.py::test_bad_data_channel_messages_get_an_error_and_the_peer_stays_alive[empty-data-url]",
    ),
    "7d view yaw NaN accepted, frames then pass through unedited": (
        "faults/test_faults_server.py::test_bad_data_channel_messages_get_an_error_and_the_peer_stays_alive[nan-view]",
        "faults/test_faults_server.py::test_hostile_offer_json_is_a_400_not_a_500[nan]",
    ),
    "8a edit --orbit-frames -5: cryptic numpy error after PNGs are written": (
        "faults/test_faults_cli.py::test_edit_validates_every_argument_before_writing_anything[orbit-frames]",
    ),
    "8b edit --views nan after PNGs are written": (
        "faults/test_faults_cli.py::test_edit_validates_every_argument_before_writing_anything[views-nan]",
    ),
    "8c edit prompt of spaces after PNGs are written": (
        "faults/test_faults_cli.py::test_edit_validates_every_argument_before_writing_anything[prompt-spaces]",
    ),
    "8d edit --prompt '' silently reconstructs": (
        "faults/test_faults_cli.py::test_edit_validates_every_argument_before_writing_anything[prompt-empty]",
    ),
    "8e edit of a truncated JPEG reported as 'no face found'": (
        "faults/test_faults_cli.py::test_edit_of_a_truncated_jpeg_says_it_cannot_be_decoded",
    ),
    "8 edit leaves partial output on a late failure": (
        "faults/test_faults_cli.py::test_edit_failure_midway_leaves_no_partial_output",
    ),
    "9a crafted checkpoint ref_dim makes the loader try 51 GB": (
        "faults/test_faults_model.py::test_crafted_config_size_is_refused_before_the_network_is_built",
        "faults/test_faults_model.py::test_malformed_checkpoint_metadata_is_a_clear_error[huge]",
    ),
    "9b the UI's 300-character prompt limit only enforced in the browser": (
        "faults/test_faults_server.py::test_initial_prompt_over_the_limit_is_refused",
        "faults/test_faults_server.py::test_bad_data_channel_messages_get_an_error_and_the_peer_stays_alive[other-bad-values]",
        "faults/test_faults_server.py::test_gradio_app_enforces_the_prompt_limit_server_side",
    ),
    "9c process overwrites an existing OUT without saying so": (
        "faults/test_faults_cli.py::test_existing_output_is_kept_unless_overwrite_is_given",
    ),
    "9d WebRTC UDP sockets bind non-loopback addresses while signalling is loopback-only": (
        "faults/test_faults_server.py::test_media_sockets_bind_loopback_when_signalling_is_loopback",
    ),
    "honesty: prior training passes with lr 0": ("test_train.py::test_prior_steps_reduce_loss",),
    "honesty: extra top-level checkpoint entries assert nothing": (
        "test_importer.py::test_extra_top_level_entries_are_ignored",
    ),
    "honesty: border padding tests pass with the behaviour removed": (
        "test_pose_estimator.py::test_face_at_the_border_is_padded_not_a_crash",
        "test_align.py::test_face_at_the_frame_border_is_padded",
    ),
    "honesty: conformance tests skip in a plain clone": (
        "test_conformance_data.py::test_compact_copy_is_small_and_complete",
        "test_conformance_data.py::test_compact_reference_alone_catches_a_layout_bug",
    ),
}


def _tests_in(path: Path) -> dict[str, set[str]]:
    """Test function name -> the ids given to its parametrize decorators (`ids=[...]`)."""
    found: dict[str, set[str]] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            found[node.name] = {
                c.value
                for d in node.decorator_list
                if isinstance(d, ast.Call)
                for kw in d.keywords
                if kw.arg == "ids" and isinstance(kw.value, (ast.List, ast.Tuple))
                for c in kw.value.elts
                if isinstance(c, ast.Constant)
            }
    return found


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_every_issue16_defect_has_a_test_named_after_it(defect):
    for node_id in DEFECTS[defect]:
        file, _, name = node_id.partition("::")
        name, _, param = name.partition("[")
        tests = _tests_in(TESTS / file)
        assert name in tests, f"{defect}: {node_id} is gone"
        if param:
            assert param.rstrip("]") in tests[name], f"{defect}: no case {param.rstrip(']')!r} in {name}"
