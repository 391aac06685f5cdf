Feature: Scanning a prefix page by page
  A scan returns the keys under a prefix in order, a page at a time; each page's next_cursor
  asks for the next one, and the last page has none.

  Scenario: A user reads 25 keys 10 at a time
    Given a running Jessy with the gateway in front
    And the keys "user:00" to "user:24" are stored
    And the key "user" holds "not under the prefix"
    And the key "user;00" holds "just after the prefix"
    And the key "usa:1" holds "just before the prefix"
    When I scan the prefix "user:" 10 keys at a time
    Then I get 3 pages holding 10, 10 and 5 keys
    And the keys are "user:00" to "user:24", each exactly once and in order
    And each key comes with the value I stored
