Feature: Backing up, wiping and restoring
  A snapshot taken while the store serves restores with the documented command,
  `tar -xzf backup.tar.gz -C <data dir>`, into an empty data directory.

  Scenario: A user backs up through the gateway, wipes the store and restores it with tar
    Given a running Jessy with the gateway in front
    And a dimension "users" with the keys "user:001" to "user:040"
    And the keys "doc:001" to "doc:060" are stored
    When I download a snapshot through the gateway to "backup.tar.gz"
    And I put "written after the snapshot" under the key "late"
    And I stop Jessy
    And I wipe the data directory
    Then the data directory is empty
    When I restore "backup.tar.gz" into the data directory with tar
    And I start Jessy again
    Then the gateway reports jessy-core as "ok"
    And every key I stored before the snapshot is back
    And the key "late" is not found

  @needs-cli-backup
  Scenario: A user backs up a stopped store with the jessy command and restores it
    Given a running Jessy with the gateway in front
    And a dimension "users" with the keys "user:001" to "user:020"
    And the keys "doc:001" to "doc:030" are stored
    When I stop Jessy
    And I run "jessy backup backup.tar.gz"
    And I wipe the data directory
    And I run "jessy restore backup.tar.gz"
    And I start Jessy again
    Then the gateway reports jessy-core as "ok"
    And every key I stored is back
