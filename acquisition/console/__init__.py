"""The Qt operator console (`flexcap console --rig FILE`): the rig's health, camera previews, live
signals, the visit plan, the pre-flight check and recording, in one window that never blocks."""
