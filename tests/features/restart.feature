Feature: Restarting the service keeps the data
  jessy-core stops cleanly on SIGTERM (exit 0); started again on the same data directory it
  serves every acknowledged write, and the gateway, never restarted, finds it again.

  Scenario: A user restarts jessy-core and finds the data
    Given a running Jessy with the gateway in front
    And a dimension "notes" with the keys "note:01" to "note:15"
    And the keys "item:01" to "item:30" are stored
    And the key "greeting" holds "hello"
    When I stop Jessy
    Then the gateway reports jessy-core as "unreachable"
    When I start Jessy again
    Then the gateway reports jessy-core as "ok"
    And every key I stored is back
