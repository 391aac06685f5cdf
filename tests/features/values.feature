Feature: Storing and reading values through the gateway
  A user talks to jessy-api, which forwards /api/v1 to jessy-core. A value is any bytes, comes
  back exactly as stored with an ETag naming its version, and is gone once deleted.

  Background:
    Given a running Jessy with the gateway in front

  Scenario: A user stores a value and reads it back
    When I put "hello" under the key "greeting"
    Then the answer is 204 with an ETag
    When I get the key "greeting"
    Then the answer is 200
    And the value is "hello"
    And the ETag is the one my put returned

  Scenario: Values and keys are bytes, not text
    When I put the bytes "00 ff 0a 0d 80 7f 00" under the key "blob/raw"
    Then the answer is 204 with an ETag
    When I get the key "blob/raw"
    Then the value is the bytes "00 ff 0a 0d 80 7f 00"
    When I put every byte value from 00 to ff under the key with the bytes "00 2f ff 20 25"
    And I get the key with the bytes "00 2f ff 20 25"
    Then the answer is 200
    And the value is every byte value from 00 to ff

  Scenario: Every write gets a new version
    Given the key "counter" holds "1"
    When I put "2" under the key "counter"
    And I put "3" under the key "counter"
    Then each put returned a different ETag
    When I get the key "counter"
    Then the value is "3"
    And the ETag is the one my put returned

  Scenario: A deleted key is gone
    Given the key "temporary" holds "soon gone"
    When I delete the key "temporary"
    Then the answer is 204
    When I get the key "temporary"
    Then the answer is 404 with the problem code "key_not_found"
